"""octrack: train and run the three networks of an OrganoidTracker-style cell tracker."""

__version__ = "0.1.0"
