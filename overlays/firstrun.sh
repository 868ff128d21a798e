# placeholder: the first-run script (owned by the agent work)
