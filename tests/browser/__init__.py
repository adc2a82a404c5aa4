"""Browser tests of the dashboard (issue 18): Playwright driving Debian's chromium."""
