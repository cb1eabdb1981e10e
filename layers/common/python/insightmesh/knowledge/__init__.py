"""The knowledge base: documents → text → chunks → vectors in Qdrant, and retrieval with access control.

Modules (each imported on use; importing the package loads none of them):

* ``base`` — the shared vocabulary: ``SourceDocument``, ``Viewer``, ``Passage``, ``IngestReport``
  and the ACL principals (``anyone``, ``domain:``, ``user:``, ``group:``);
* ``extract`` — text and headed sections out of PDF, DOCX, XLSX, PPTX, Markdown, text, CSV/TSV,
  VTT and SRT (and Google Docs/Sheets/Slides exports);
* ``chunking`` — overlapping chunks with their heading, ``"title — heading"`` context and
  deterministic ids;
* ``embeddings`` — hashed BM25 sparse vectors (always) and the dense provider port (``offline``,
  ``openai``, ``bedrock``);
* ``store`` — the Qdrant collection (embedded locally, a server in AWS);
* ``models`` — the ``KnowledgeDocument`` record of each document (DynamoDB);
* ``pipeline`` — ``ingest_documents`` (new / changed / unchanged / failed / swept) and
  ``remove_documents``;
* ``retrieval`` — ``retrieve(question, viewer)`` with the ACL filter and the per-document cap
  inside the query, and ``viewer_for_user``;
* ``answers`` — the sources section, the LLM's grounding prompt and the offline extractive answer;
* ``settings`` — the environment (``QDRANT_*``, ``EMBEDDING_*``).
"""
