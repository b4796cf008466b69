# bash completion for moonwire(1).  Installed by `make install` as
# share/bash-completion/completions/moonwire.  Needs nothing but bash
# (not the bash-completion package's helpers).  The option lists are kept
# in step with `moonwire COMMAND --help` by tests/test_man.py.

_moonwire_opts() {
	case "$1" in
	run)
		echo "--policy --profile --read --write --exec --sys --kv --sleep" \
			"--instructions --memory --cpu --wall --output --program --result" \
			"--depth --calls --write-total --json --state --kv-scope --arg --command-uids --help" ;;
	agent) echo "-c --check" ;;
	send)
		echo "-c --config --to --targets --group --max-targets -k --key --ttl" \
			"--limit --arg --envelope --timeout --json --omemo --help" ;;
	fleet) echo "-c --config --group --json --help" ;;
	results) echo "-c --config --json --wait --help" ;;
	jobs) echo "-c --config --json --limit --help" ;;
	cancel) echo "-c --config -k --key --to --timeout --ttl --json --omemo --help" ;;
	sign)
		echo "-k --key --to --ttl --job-id --limit --arg --prepare --signature --cancel --help" ;;
	verify) echo "-f --allowed-signers --audience --at --help" ;;
	fingerprint|devices|trust|distrust) echo "-c --config --db --help" ;;
	init)
		case "$2" in
		agent)
			echo "--jid --allowed-signer --principal --operator --dir --state-dir" \
				"--user --password-file --host --port --ca-file --force --help" ;;
		operator)
			echo "--jid --signing-key --file --password-file --host --port" \
				"--ca-file --force --help" ;;
		*)
			echo "--jid --allowed-signer --principal --operator --dir --state-dir" \
				"--user --signing-key --file --password-file --host --port" \
				"--ca-file --force --help" ;;
		esac ;;
	esac
}

_moonwire() {
	local cur prev cmd sub i
	COMPREPLY=()
	cur="${COMP_WORDS[COMP_CWORD]}"
	prev=""
	[ "$COMP_CWORD" -gt 0 ] && prev="${COMP_WORDS[COMP_CWORD-1]}"
	cmd=""
	sub=""
	for ((i = 1; i < COMP_CWORD; i++)); do
		case "${COMP_WORDS[i]}" in
		-*) ;;
		*) cmd="${COMP_WORDS[i]}"; break ;;
		esac
	done
	if [ -z "$cmd" ]; then
		COMPREPLY=($(compgen -W "run agent send results jobs cancel fleet sign verify fingerprint devices trust distrust init --help" -- "$cur"))
		return 0
	fi
	if [ "$cmd" = fleet ] && [ $((i + 1)) -ge "$COMP_CWORD" ]; then
		COMPREPLY=($(compgen -W "add remove list --help" -- "$cur"))
		return 0
	fi
	if [ "$cmd" = init ]; then
		# `init agent` / `init operator`: the kind is the word after init
		if [ $((i + 1)) -lt "$COMP_CWORD" ]; then
			sub="${COMP_WORDS[i+1]}"
		else
			COMPREPLY=($(compgen -W "agent operator --help" -- "$cur"))
			return 0
		fi
	fi
	case "$prev" in
	--read|--write|--state|--dir|--state-dir)
		COMPREPLY=($(compgen -d -- "$cur")); return 0 ;;
	-c|--config|--policy|-k|--key|--envelope|--targets|--signature|-f|--allowed-signers|--db|--signing-key|--password-file|--ca-file|--file)
		COMPREPLY=($(compgen -f -- "$cur")); return 0 ;;
	--allowed-signer)
		COMPREPLY=($(compgen -f -X '!*.pub' -- "$cur") $(compgen -d -- "$cur")); return 0 ;;
	--user)
		COMPREPLY=($(compgen -u -- "$cur")); return 0 ;;
	--jid|--principal|--operator|--host|--port)
		return 0 ;;
	--omemo)
		COMPREPLY=($(compgen -W "legacy 2" -- "$cur"))
		return 0 ;;
	--limit)
		COMPREPLY=($(compgen -S = -W "instructions memory cpu wall output program result depth calls write_total" -- "$cur"))
		compopt -o nospace 2>/dev/null
		return 0 ;;
	--profile|--exec|--sleep|--instructions|--memory|--cpu|--wall|--output|--program|--result|--depth|--calls|--write-total|--kv-scope|--arg|--command-uids|--to|--ttl|--job-id|--timeout|--audience|--at|--group|--max-targets)
		return 0 ;;
	esac
	if [[ "$cur" == -* ]]; then
		COMPREPLY=($(compgen -W "$(_moonwire_opts "$cmd" "$sub")" -- "$cur"))
		return 0
	fi
	case "$cmd" in
	run|send|sign)
		COMPREPLY=($(compgen -f -X '!*.lua' -- "$cur") $(compgen -d -- "$cur")) ;;
	verify)
		COMPREPLY=($(compgen -f -- "$cur")) ;;
	esac
	return 0
}
complete -F _moonwire moonwire
