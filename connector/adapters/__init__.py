"""CRM adapters: the one interface every CRM implements, and the implementations."""
