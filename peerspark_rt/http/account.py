"""/api/auth (verification, passwords, email) and /api/users/me (deletion, export): an
account's life after sign-up."""

from __future__ import annotations

from aiohttp import web

from ..accounts.erase import ERASER, DeleteAccount, ExportStatus
from ..accounts.lifecycle import (
    ACCOUNTS,
    Accepted,
    EmailChange,
    EmailVerified,
    PasswordChange,
    PasswordChanged,
    ResetConfirm,
    ResetRequest,
    VerifyEmailRequest,
)
from .auth import client_info
from .contract import Raw, Reply, access, operation, signed_in
from .middleware import principal

routes = web.RouteTableDef()


@routes.post("/api/auth/verify-email")
@operation(tag="auth", public=True, errors=(400, 409), access=access(400))
async def verify_email(request: web.Request, body: VerifyEmailRequest) -> EmailVerified:
    """Use an email verification link's token (also confirms a change of address).

    400 for a token that is not one of ours, 409 for one used or expired. (The matrix sends a
    token that is not valid: the links are single-use.)"""
    return await request.app[ACCOUNTS].verify_email(body)


@routes.post("/api/auth/verify-email/resend")
@operation(tag="auth", status=202, errors=(409, 429), access=signed_in(202))
async def resend_verification(request: web.Request) -> Accepted:
    """Send the verification link again (the earlier one stops working)."""
    return await request.app[ACCOUNTS].resend_verification(principal(request))


@routes.post("/api/auth/password")
@operation(tag="auth", errors=(403,), access=signed_in(200))
async def change_password(request: web.Request, body: PasswordChange) -> PasswordChanged:
    """Change the password (needs the current one); every other login session ends."""
    return await request.app[ACCOUNTS].change_password(principal(request), body)


@routes.post("/api/auth/password-reset")
@operation(tag="auth", public=True, status=202, errors=(429,), access=access(202))
async def request_reset(request: web.Request, body: ResetRequest) -> Accepted:
    """Email a link to choose a new password. The answer is the same whether or not the
    address has an account."""
    return await request.app[ACCOUNTS].request_reset(body, client_info(request))


@routes.post("/api/auth/password-reset/confirm")
@operation(tag="auth", public=True, errors=(400, 409), access=access(400))
async def confirm_reset(request: web.Request, body: ResetConfirm) -> PasswordChanged:
    """Choose a new password with a reset link's token; every login session ends.

    (The matrix sends a token that is not valid: the links are single-use.)"""
    return await request.app[ACCOUNTS].confirm_reset(body)


@routes.post("/api/auth/email")
@operation(tag="auth", status=202, errors=(403, 409), access=signed_in(202))
async def change_email(request: web.Request, body: EmailChange) -> Accepted:
    """Move the account to a new address (needs the password); it changes once the link
    emailed to the new address is used."""
    return await request.app[ACCOUNTS].change_email(principal(request), body)


@routes.delete("/api/users/me")
@operation(tag="auth", errors=(403,), access=signed_in(403))
async def delete_account(request: web.Request, body: DeleteAccount) -> None:
    """Delete the caller's account (confirmed with the password); their sockets close at once.

    What is removed and what stays anonymised: README, "Deleting an account". (The matrix sends
    a wrong password: deleting the reference accounts would end it; the happy path is in
    tests/test_account_lifecycle.py.)"""
    await request.app[ERASER].delete(principal(request), body)


@routes.get("/api/users/me/export")
@operation(tag="auth", status=(202, 200), access=signed_in(202))
async def export(request: web.Request) -> Reply[ExportStatus]:
    """Start a JSON archive of everything the caller owns (202), or see how the last one is
    doing (200). The job that builds it emails a link that downloads it once."""
    status, started = await request.app[ERASER].export_status(principal(request))
    return Reply(status, status=202 if started else 200)


@routes.get("/api/exports/{token}")
@operation(
    tag="auth",
    public=True,
    status=200,
    raw={200: Raw("application/json", "the archive (a JSON file to save)")},
    access=access(404),
)
async def download_export(request: web.Request) -> web.Response:
    """Download a data export, once, with the link that was emailed."""
    archive = await request.app[ERASER].download(request.match_info["token"])
    return web.Response(
        body=archive,
        content_type="application/json",
        headers={
            "Content-Disposition": 'attachment; filename="peerspark-export.json"',
            "Cache-Control": "no-store",
        },
    )
