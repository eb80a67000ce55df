"""Everything that speaks Feishu: the Open API client, transports (long connection, webhook), the pipeline."""
