"""Reference data the goal forms need (pipelines, stages, activity types, users, currencies): the five
read-only Pipedrive operations the proxy serves (`ops`), their token costs (`costs`, imported by the budget
without the rest), their query strings (`queries`) and the response schemas of the OpenAPI document
(`schemas`)."""
