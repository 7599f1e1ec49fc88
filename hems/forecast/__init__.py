"""Weather-free forecasts of one home: load from its own history (falling back to a standard
household profile), PV from clear-sky irradiance scaled by a learned factor, and the MAE of
each. Every method that needs time takes it as an argument."""
