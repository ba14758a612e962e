"""Request and response models (pydantic); they are also the OpenAPI document."""
