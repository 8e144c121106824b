"""notifier: turns CodeIssued into one SMS or email, with retries, and reports NotificationStatus."""
