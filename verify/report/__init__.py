"""Stage 5, report: JSON for machines, Markdown pages with figures for people, and an index over all (in `pages`)."""
