"""`hems demo`: a whole energy community on one machine, with simulated devices and a report."""
