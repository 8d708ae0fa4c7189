"""Small example tasks shipped with nemorun (used by ``task=train``)."""
