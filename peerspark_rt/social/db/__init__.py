"""The social feed's SQL: posts, comments, reports, and the mobile sync log."""
