"""SQL for deleting an account and exporting what it owns.

What deletion does, table by table (README "Deleting an account" says the same):
* removed with the account (ON DELETE CASCADE): the profile, login sessions, provider links,
  account tokens, push subscriptions, notifications, pod memberships, session participation,
  posts (with the comments under them), comments nobody else answered, likes,
  bookmarks, ratings, resources and uploaded files, calendar events, study sessions the user
  organized (with their chat), AI conversations, analytics, data exports;
* kept, anonymised: comments other people replied to (shown as deleted, without content or
  author, so their replies keep their thread); (ON DELETE SET NULL) chat messages in other
  people's sessions (the room's
  history keeps its sequence, the sender shows as a deleted user), reports the user filed,
  moderation decisions they made, analytics events, the admin audit log;
* pods the user owned pass to their highest-ranked, longest-standing member, or are deleted
  when nobody else is in them.
"""

from __future__ import annotations

import uuid

import asyncpg
import orjson

from ...infra.dbtypes import Executor

ROLE_ORDER = "CASE role WHEN 'admin' THEN 3 WHEN 'moderator' THEN 2 ELSE 1 END"


async def hand_over_pods(conn: Executor, user_id: uuid.UUID) -> tuple[int, int]:
    """Pods the user owns go to the next in line, or are deleted when empty: (passed, deleted)."""
    owned = await conn.fetch(
        """SELECT pod_id FROM pod_memberships
            WHERE user_id = $1 AND role = 'owner' AND status = 'active'""",
        user_id,
    )
    passed = deleted = 0
    for row in owned:
        heir = await conn.fetchval(
            f"""SELECT user_id FROM pod_memberships
                 WHERE pod_id = $1 AND user_id <> $2 AND status = 'active'
                 ORDER BY {ROLE_ORDER} DESC, joined_at, user_id LIMIT 1""",  # noqa: S608 (composed of constants; values are parameters)
            row["pod_id"],
            user_id,
        )
        if heir is None:
            await conn.execute("DELETE FROM pods WHERE id = $1", row["pod_id"])
            deleted += 1
        else:
            await conn.execute(
                "UPDATE pod_memberships SET role = 'owner' WHERE pod_id = $1 AND user_id = $2",
                row["pod_id"],
                heir,
            )
            passed += 1
    return passed, deleted


async def keep_answered_comments(conn: Executor, user_id: uuid.UUID) -> int:
    """The user's comments that others replied to stay, deleted and anonymous (their content
    and author gone), so other people's replies keep their place; returns how many."""
    result = await conn.execute(
        """UPDATE comments c
              SET author_id = NULL, content = '', status = 'deleted', updated_at = NOW()
            WHERE c.author_id = $1
              AND EXISTS (SELECT 1 FROM comments r
                           WHERE r.post_id = c.post_id
                             AND r.thread_path > c.thread_path
                             AND r.thread_path < c.thread_path || '~'
                             AND r.author_id IS DISTINCT FROM $1)""",
        user_id,
    )
    return int(result.split()[-1])


async def release_counts(conn: Executor, user_id: uuid.UUID) -> None:
    """The pods and sessions the user counted in count one fewer (the rows go with the user)."""
    await conn.execute(
        """UPDATE pods SET current_member_count = current_member_count - 1
            WHERE id IN (SELECT pod_id FROM pod_memberships
                          WHERE user_id = $1 AND status = 'active')""",
        user_id,
    )
    await conn.execute(
        """UPDATE study_sessions SET current_participants = current_participants - 1
            WHERE organizer_id <> $1
              AND id IN (SELECT session_id FROM session_participants
                          WHERE user_id = $1 AND status IN ('accepted', 'attended'))""",
        user_id,
    )


async def upload_keys(conn: Executor, user_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT storage_key, backend FROM uploads WHERE owner_id = $1", user_id)


async def delete_user(conn: Executor, user_id: uuid.UUID) -> bool:
    status = await conn.execute("DELETE FROM users WHERE id = $1", user_id)
    return status.endswith(" 1")


# --- export: (section, query returning one JSON array of the user's rows as text) ---------

_EXPORT = {
    "profile": """SELECT id, email, username, first_name, last_name, avatar_url, bio,
        date_of_birth, education_level, institution, major, graduation_year, location, timezone,
        language_preference, is_verified, is_premium, premium_expires_at, account_status, role,
        privacy_settings, notification_settings, created_at, updated_at
        FROM users WHERE id = $1""",
    "loginSessions": """SELECT id, device_info, host(ip_address) AS ip_address, created_at,
        last_used_at, expires_at FROM user_sessions WHERE user_id = $1""",
    "signInProviders": """SELECT provider, provider_account_id, email, email_verified, created_at
        FROM user_oauth_accounts WHERE user_id = $1""",
    "pushSubscriptions": """SELECT endpoint, user_agent, created_at, last_sent_at
        FROM push_subscriptions WHERE user_id = $1""",
    "podMemberships": """SELECT m.pod_id, p.name AS pod_name, m.role, m.status, m.joined_at
        FROM pod_memberships m JOIN pods p ON p.id = m.pod_id WHERE m.user_id = $1""",
    "podsCreated": """SELECT id, name, description, subject, is_public, created_at
        FROM pods WHERE creator_id = $1""",
    "podInvitationsSent": """SELECT pod_id, invitee_email, invitee_id, message, status,
        created_at FROM pod_invitations WHERE inviter_id = $1""",
    "posts": """SELECT id, pod_id, content, post_type, media_urls, attachments, tags,
        is_anonymous, visibility, status, created_at, updated_at FROM posts WHERE author_id = $1""",
    "comments": """SELECT id, post_id, parent_comment_id, content, is_anonymous, status,
        created_at, updated_at FROM comments WHERE author_id = $1""",
    "postInteractions": """SELECT post_id, interaction_type, created_at
        FROM post_interactions WHERE user_id = $1""",
    "resources": """SELECT id, pod_id, title, description, resource_type, file_url, content,
        tags, subject, is_public, created_at, updated_at FROM resources WHERE owner_id = $1""",
    "resourceRatings": """SELECT resource_id, rating, review, created_at
        FROM resource_ratings WHERE user_id = $1""",
    "resourceBookmarks": """SELECT resource_id, created_at FROM resource_bookmarks
        WHERE user_id = $1""",
    "uploads": """SELECT id, original_name, content_type, size_bytes, attached_to, attached_id,
        created_at FROM uploads WHERE owner_id = $1""",
    "sessionsOrganized": """SELECT id, title, description, session_type, pod_id, start_time,
        end_time, timezone, status, created_at FROM study_sessions WHERE organizer_id = $1""",
    "sessionParticipation": """SELECT session_id, status, role, joined_at, left_at,
        attendance_seconds FROM session_participants WHERE user_id = $1""",
    "chatMessages": """SELECT session_id, seq, message_type, content, file_url, created_at
        FROM session_messages WHERE sender_id = $1""",
    "calendarEvents": """SELECT id, title, description, event_type, start_time, end_time,
        timezone, location, is_all_day, is_recurring, recurrence_pattern, reminder_settings,
        related_pod_id, related_session_id, status, created_at FROM calendar_events
        WHERE user_id = $1""",
    "notifications": """SELECT id, notification_type, title, message, action_url, is_read,
        created_at FROM notifications WHERE recipient_id = $1""",
    "aiConversations": """SELECT c.id, c.conversation_type, c.created_at,
        (SELECT coalesce(json_agg(json_build_object('role', m.role, 'content', m.content,
                 'createdAt', m.created_at) ORDER BY m.created_at), '[]')
           FROM ai_messages m WHERE m.conversation_id = c.id) AS messages
        FROM ai_conversations c WHERE c.user_id = $1""",
    "reportsFiled": """SELECT content_type, content_id, reason, description, status, created_at
        FROM content_reports WHERE reporter_id = $1""",
    "studyAnalytics": """SELECT date, study_time_minutes, sessions_completed, focus_score,
        subjects_studied FROM study_analytics WHERE user_id = $1""",
    "flashcardDecks": """SELECT d.id, d.pod_id, d.title, d.description, d.exam_date, d.created_at,
        (SELECT coalesce(json_agg(json_build_object('id', c.id, 'front', c.front, 'back', c.back,
                 'tags', c.tags, 'status', c.status, 'createdAt', c.created_at)
                 ORDER BY c.created_at), '[]')
           FROM study_cards c WHERE c.deck_id = d.id) AS cards
        FROM study_decks d WHERE d.owner_id = $1""",
    "flashcardReviews": """SELECT card_id, client_review_id, rating, reviewed_at, duration_ms,
        session_id, state, due_after FROM study_reviews WHERE user_id = $1""",
    "studySettings": """SELECT desired_retention, new_per_day FROM study_settings
        WHERE user_id = $1""",
    "studyGoals": """SELECT minutes_per_week, cards_per_week, sessions_per_week, reminders
        FROM study_goals WHERE user_id = $1""",
}


async def export_sections(conn: Executor, user_id: uuid.UUID) -> dict[str, object]:
    """Everything the user owns, section by section (JSON values, as the database renders
    them: timestamps in ISO 8601)."""
    out: dict[str, object] = {}
    for name, query in _EXPORT.items():
        raw = await conn.fetchval(
            f"SELECT coalesce(json_agg(t), '[]')::text FROM ({query}) t",  # noqa: S608 (composed of constants; values are parameters)
            user_id,
        )
        rows = orjson.loads(raw)
        out[name] = rows[0] if name == "profile" and rows else rows
    return out
