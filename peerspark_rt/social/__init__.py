"""The social feed: posts, comments, interactions, reports, and mobile sync of them."""
