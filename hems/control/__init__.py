"""Control: the setpoint policy, the safety envelope and actuation with read-back and dead-man
refresh. Local limits are enforced here, after the plan and any community request."""
