"""Static mesh assets: topology, UVs, graph, areas and regions, built once in numpy."""
