"""Tests of the pyreg client: library, local store, transfers and commands, against real servers."""
