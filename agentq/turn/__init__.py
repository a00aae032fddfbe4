"""A turn, one step a module, in the order a message travels."""
