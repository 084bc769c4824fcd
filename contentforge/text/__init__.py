"""Text for posts: platform rules and checks, caption hooks, and image prompts."""
