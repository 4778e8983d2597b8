"""Authentication of registry requests (distribution's `auth` section) and access control.

    htpasswd      HTTP Basic against a bcrypt file (`auth.htpasswd`)
    bearer        token auth middleware (`auth.token`): challenges, access per request
    scopes        what each request needs, what a token grants
    token         JWT verification: keys by kid, x5c chains, JWKS
    keys          key IDs (libtrust, RFC 7638), signing keys, generation and rotation
    tokenserver   the built-in token server (`auth.token.server`)
    rules         its access rules
    ratelimit     failed logins per account and address
"""
