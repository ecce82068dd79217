"""Operations: the command line, the workers supervisor, health, logs, the replay tool."""
