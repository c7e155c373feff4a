"""Losses as plain ``nn.Module`` s (no Lightning): the tasks in :mod:`recsys_lab.tasks` call them."""
