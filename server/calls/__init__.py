"""Calls: ICE servers (STUN/TURN with time-limited credentials) and missed-call records.

Call signalling itself travels end-to-end encrypted over the to-device queue; the server only relays it.
"""
