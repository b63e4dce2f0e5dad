"""Photos to vectors: backbones, engines, the embedder and the pipeline that fills a store."""
