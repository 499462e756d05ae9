"""Helpers shared by the tests: every function, class or constant that more than one test module
uses lives here, in a module named for its one topic (``ids``, ``stacks``, ``admin_api``,
``dead_letters``, ``web_stack``, ``pages``, the ``fake_*`` servers, ...).

A conftest holds fixtures and pytest hooks only, and a test module the helpers only it uses;
neither is imported from elsewhere (``tests/unit/test_test_layout.py`` holds this).
"""
