"""The quality gate on generated text, and the product and price facts it traces texts back to."""
