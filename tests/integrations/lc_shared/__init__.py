"""Fake chat models and tools shared by the LangChain and LangGraph environments."""
