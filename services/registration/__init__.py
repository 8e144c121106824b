"""registration: CRM contract links and terminations → accounts → ``AccountChanged``."""
