"""Study sessions and their live rooms: scheduling, participants, chat storage, and the rules
behind every websocket frame."""
