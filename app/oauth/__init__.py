"""OAuth2 authorization server: client authentication, client_credentials, access tokens, metadata."""
