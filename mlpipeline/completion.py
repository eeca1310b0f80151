"""Shell completion for bash and zsh, generated from the command's own parsers, so it always
offers what ``mlpipeline --help`` and each command's ``--help`` list:
``eval "$(mlpipeline completion bash)"`` (or ``zsh``) in the shell's start-up file.

The commands and their options come in as arguments (commands.py's ``completion`` command
passes them from its table): this module knows nothing of the commands itself."""
from __future__ import annotations

from typing import TYPE_CHECKING, Dict, List

if TYPE_CHECKING:
    import argparse


def options_of(parser: "argparse.ArgumentParser") -> List[str]:
    """The options ``parser`` shows in its --help."""
    return sorted(option for action in parser._actions for option in action.option_strings if action.help != "==SUPPRESS==")


def completion_script(shell: str, options: List[str], per_command: Dict[str, List[str]]) -> str:
    """The completion script for ``shell`` (bash, or zsh through its bash compatibility):
    ``options`` after ``mlpipeline``, and after each command the words ``per_command`` gives."""
    commands = list(per_command)
    cases = "\n".join(f'        {name}) words="{" ".join(words)}" ;;' for name, words in per_command.items())
    script = f"""# mlpipeline completion for {shell}, made by `mlpipeline completion {shell}`
_mlpipeline() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" prev="${{COMP_WORDS[COMP_CWORD-1]}}" command="" words word
    for word in "${{COMP_WORDS[@]:1:COMP_CWORD-1}}"; do
        case " {" ".join(commands)} " in *" $word "*) command="$word"; break ;; esac
    done
    case "$prev" in
        -C) COMPREPLY=($(compgen -d -- "$cur")); return ;;
        -o) COMPREPLY=($(compgen -f -- "$cur")); return ;;
    esac
    case "$command" in
{cases}
        *) words="{" ".join(options + commands)}" ;;
    esac
    COMPREPLY=($(compgen -W "$words" -- "$cur"))
}}
complete -F _mlpipeline mlpipeline
"""
    if shell == "zsh":
        script = "autoload -U +X bashcompinit && bashcompinit\n" + script
    return script
