"""What the assistant is told: a system prompt per conversation type, the Socratic tutor, the
sources of a grounded answer, and the study-plan and explanation requests."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

CONVERSATION_TYPES = ("general", "doubt_solving", "study_plan", "explanation")
LEVELS = ("beginner", "intermediate", "advanced")
FORMATS = ("text", "steps", "examples")

BASE = (
    "You are an AI study assistant for PeerSpark, a collaborative learning platform. "
    "You help students with their studies, answer questions, explain concepts, and provide "
    "study guidance."
)

_BY_TYPE = {
    "general": "Be helpful, encouraging, and educational in your responses.",
    "doubt_solving": (
        "Focus on solving the student's specific doubt with clear, step-by-step explanations."
    ),
    "study_plan": (
        "Create personalized study plans based on the student's goals, timeline, and current level."
    ),
    "explanation": (
        "Provide clear, comprehensive explanations of concepts with examples and analogies."
    ),
}

SOCRATIC = (
    "Act as a Socratic tutor. Do not give the final answer or the full solution yet. Find out "
    "what the student already knows, then guide them with one or two short questions or a hint "
    "that moves them one step closer, so that they work the solution out themselves. If they are "
    "stuck after several hints, give a bigger hint, still not the whole solution."
)
SOLUTION = (
    "The student has asked for the solution: give the complete worked solution now, step by "
    "step, with the final answer clearly marked, then one question that checks they understood."
)
SOCRATIC_SUGGESTIONS = ["Give me another hint", "Show me the full solution"]

# Phrases with which a student asks for the answer itself rather than more hints.
_WANTS_SOLUTION = re.compile(
    r"\b("
    r"(show|give|tell|send)\s+me\s+(the\s+)?(full\s+|whole\s+|complete\s+|final\s+)?"
    r"(solution|answer|working)s?"
    r"|just\s+(tell|show|give)\s+me"
    r"|what\s+is\s+the\s+(final\s+)?answer"
    r"|(full|complete|whole|worked)\s+solution"
    r"|i\s+give\s+up"
    r"|reveal\s+(the\s+)?(solution|answer)"
    r")\b",
    re.IGNORECASE,
)


def wants_solution(message: str) -> bool:
    """Whether a student in doubt-solving mode asks for the solution rather than hints."""
    return _WANTS_SOLUTION.search(message) is not None


@dataclass(frozen=True, slots=True)
class Source:
    """A passage from a resource the asker may read, offered to the model to cite."""

    label: int
    resource_id: str
    title: str
    passage: str


def system_prompt(
    conversation_type: str,
    *,
    subject: str | None = None,
    socratic: bool = False,
    sources: Sequence[Source] = (),
) -> str:
    parts = [BASE, _BY_TYPE.get(conversation_type, _BY_TYPE["general"])]
    if subject:
        parts.append(f"The subject is {subject}.")
    if conversation_type == "doubt_solving":
        parts.append(SOCRATIC if socratic else SOLUTION)
    if sources:
        parts.append(sources_block(sources))
    return "\n\n".join(parts)


def sources_block(sources: Sequence[Source]) -> str:
    lines = [
        "Ground your answer in these passages from the student's study materials. Cite a "
        "passage where you use it as [n], with its number. Use only these as sources; if they "
        "do not answer the question, say so and answer from general knowledge.",
    ]
    lines.extend(f"[{s.label}] {s.title} (resource {s.resource_id}):\n{s.passage}" for s in sources)
    return "\n\n".join(lines)


def cited_labels(answer: str, sources: Sequence[Source]) -> list[int]:
    """The source numbers the answer cites as [n], in the order of the sources."""
    found = {int(n) for n in re.findall(r"\[(\d{1,3})\]", answer)}
    return [s.label for s in sources if s.label in found]


def study_plan_request(
    subject: str, goals: Sequence[str], timeframe: str, current_level: str, hours: float
) -> str:
    return (
        "Create a detailed study plan for:\n"
        f"Subject: {subject}\n"
        f"Goals: {', '.join(goals)}\n"
        f"Timeframe: {timeframe}\n"
        f"Current Level: {current_level}\n"
        f"Available Time: {hours:g} hours per week\n\n"
        "Provide a structured plan with daily/weekly tasks, milestones, and resource "
        "recommendations."
    )


_FORMAT_HINTS = {
    "text": "Explain in clear prose, in a few short paragraphs.",
    "steps": "Explain as a numbered sequence of steps, one idea per step.",
    "examples": "Explain mainly through worked examples, from simple to harder.",
}


def explain_request(topic: str, subject: str, level: str, fmt: str) -> str:
    return (
        f"Explain {topic} ({subject}) to a student at the {level} level. "
        f"{_FORMAT_HINTS[fmt]} Use an analogy where it helps, and end with a one-line summary."
    )
