"""The resource vault: resources, uploads (type-checked, stored in S3 or a folder), and file
sniffing."""
