"""The app's pages, one module per kind of user."""
