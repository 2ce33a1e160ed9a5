"""``driftline features UC ENTITY_ID``: an entity's online features."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table


def register(app: typer.Typer) -> None:
    """Add ``driftline features`` to the command line."""

    @app.command("features")
    def features(
        usecase: Annotated[str, typer.Argument(help="use case, e.g. credit")],
        entity_ids: Annotated[list[str], typer.Argument(help="one or more entity ids")],
    ) -> None:
        """Print the latest online features of ENTITY_IDS from the Feast online store."""
        from services.common import featurestore

        console = Console()
        settings = featurestore.FeatureStoreSettings()
        specs = settings.load_usecases()
        if usecase not in specs:
            raise typer.BadParameter(f"no use case {usecase!r}; known: {sorted(specs)}")
        store = featurestore.open_store(settings, [specs[usecase]], apply=False)
        rows = featurestore.online_features(store, specs[usecase], entity_ids)
        table = Table(title=f"{usecase}: online features")
        table.add_column("feature")
        for entity in entity_ids:
            table.add_column(entity, justify="right")
        for name in [featurestore.EVENT_ID, *specs[usecase].feature_names()]:
            cells = [_cell(row.get(name)) for row in rows]
            table.add_row(name, *cells)
        console.print(table)
        if all(row.get(featurestore.EVENT_ID) is None for row in rows):
            console.print("[yellow]no online features for these entities yet[/]")
            raise typer.Exit(1)


def _cell(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
