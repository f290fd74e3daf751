"""Message protection (RFC 9420 §6): PublicMessage and PrivateMessage, and sender data.

It builds on the key schedule (the epoch's secrets) and the secret tree; the
group layer builds on it.
"""
