"""Sources of the knowledge base: the job types that read documents from outside (Google Drive)."""
