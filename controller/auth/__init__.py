"""Admin authentication for the controller's API: scrypt passwords, sessions, throttling."""

from controller.auth.admin import (
    SESSION_TTL_US,
    AdminAuth,
    LoginRefused,
    LoginThrottled,
    set_admin_password,
)
from controller.auth.throttle import LoginThrottle

__all__ = [
    "SESSION_TTL_US",
    "AdminAuth",
    "LoginRefused",
    "LoginThrottle",
    "LoginThrottled",
    "set_admin_password",
]
