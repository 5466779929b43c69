"""Names declared once, at the bottom of the package: columns, feature/view/service names, artifact
paths and ``C2I_*`` settings. Every stage imports these; nothing here imports a stage."""
