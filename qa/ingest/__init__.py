"""How articles come in: files read and cleaned, folders watched."""
