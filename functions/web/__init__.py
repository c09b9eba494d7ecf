"""The HTTP side of the handlers: API Gateway event helpers, admin authentication, page rendering and templates,
the activity chart and the enroll throttle."""
