"""The relay beside Kratos: it checks Kratos' credential, signs and forwards.

Kratos calls the relay with its own API key or Basic credential; the relay
signs each call with Standard Webhooks headers and forwards it to the receiver,
then passes the receiver's response back to Kratos (sync routes), or commits it to
a durable outbox and delivers it later (async routes).
"""
