"""Helpers shared by the test packages: live servers, raw sockets, chats, SDK devices, calls."""
