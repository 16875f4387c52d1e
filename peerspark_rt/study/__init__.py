"""Study tools: flashcards scheduled by FSRS, decks made by the assistant, live review in a
session room, weekly goals."""
