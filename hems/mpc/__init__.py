"""The home's model-predictive controller: one convex problem per site, re-solved with new
parameter values. Importing this package does not import cvxpy; :mod:`hems.mpc.planner` does."""
