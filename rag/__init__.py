"""RAG: permissions, retrieval, prompting, generation, the answer pipeline and the click CLI."""
