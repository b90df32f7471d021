"""Built-in plugins: each is a small module of ``@hookimpl`` functions, registered by the manager.
A plugin never imports another plugin."""
