"""From brand DNA to posts: personas, monthly topics, blog posts and social posts (offline or via models)."""
