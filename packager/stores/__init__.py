"""Storage backends behind one async interface, and the registry that hands out one client per store."""

from packager.stores.base import ListedObject, ObjectFacts, Store
from packager.stores.registry import StoreRegistry

__all__ = ["ListedObject", "ObjectFacts", "Store", "StoreRegistry"]
