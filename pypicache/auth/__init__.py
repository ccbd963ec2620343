"""Users, API tokens and passwords, and the limits on guessing them."""
