"""Stage 1, declare: architectures and their claims, the tasks they train on, the groups and actions a claim names,
and the subject a check is run on. Nothing here computes a verdict."""
