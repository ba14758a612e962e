"""HTTP routers, one per resource: decode the request, call one service function, encode the answer."""
