# bash completion for l2tpctl (l2tpd). What can follow is decided by l2tpctl itself, from
# the grammar it parses with and, for tunnel and session IDs, the running daemon: this file
# only passes the words over. Installed by `npm install -g` of the l2tpd package (as
# share/bash-completion/completions/l2tpctl under npm's prefix); or source it from ~/.bashrc.
_l2tpctl() {
  local cur=${COMP_WORDS[COMP_CWORD]} line files=0
  COMPREPLY=()
  while IFS= read -r line; do
    if [[ $line == @files ]]; then files=1; else COMPREPLY+=("$line"); fi
  done < <("${COMP_WORDS[0]}" __complete "$COMP_CWORD" "${COMP_WORDS[@]}" 2>/dev/null)
  if (( files )); then
    compopt -o filenames 2>/dev/null
    local f
    while IFS= read -r f; do COMPREPLY+=("$f"); done < <(compgen -f -- "$cur")
  fi
}
complete -F _l2tpctl l2tpctl
